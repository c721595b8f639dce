"""Exact entropy coding for learned codecs: integer probability tables, a constriction range coder with an
escape scheme, and the integer hyper-synthesis network that makes hyperprior decoding platform independent.
"""
