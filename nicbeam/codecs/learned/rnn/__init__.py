"""Recurrent variable-rate codecs after Toderici et al. (ICLR 2016, CVPR 2017): one network serves every
rate, each iteration adding 32 bits per 16x16 block; streams are progressive (one container layer per
iteration). One module per building block, composed by configuration:

* :mod:`.cells` -- ConvLSTM, associative LSTM, ConvGRU, residual GRU;
* :mod:`.binarizer` -- tanh + sign (stochastic in training);
* :mod:`.framings` -- one-shot, additive, residual scaling reconstruction;
* :mod:`.network` -- the conv-RNN encoder / decoder and the model the trainer trains;
* :mod:`.context` -- the learned bit context model and its exact integer evaluation;
* :mod:`.bitcoding` -- bits to bytes (raw packed bits or context-model range coding);
* :mod:`.codec` -- the registered codecs (one small class per variant);
* :mod:`.progressive` -- cutting a stream to fewer iterations.

The package itself imports nothing, so ``progressive`` can be used without building a network.
"""
