"""Transform codecs written in nicbeam: ``dct`` (8x8 block DCT, JPEG-like) and ``dwt`` (CDF 9/7 wavelet).

Both share the colour conversion (:mod:`.colour`), the context-adaptive plane coders (:mod:`.planes`) and the
adaptive range-coding models of :mod:`nicbeam.entropy.adaptive`.
"""
