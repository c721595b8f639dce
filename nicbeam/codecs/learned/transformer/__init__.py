"""CNN-Transformer learned codec ``tcm-hyperprior``: Swin-style window attention mixed with convolutions
(Liu et al. CVPR 2023) inside the transforms of the mean-scale hyperprior.

``blocks``: window self-attention and Transformer-CNN mixture blocks; ``model``: the trainable model
(family ``tcm-hyperprior``); ``codec``: the registered codec. Importing this subpackage imports torch.
"""
