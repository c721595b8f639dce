"""PyTorch building blocks for learned codecs: GDN, entropy models and the autoencoder families.

Importing this package imports torch; codec and CLI modules import it lazily.
"""
