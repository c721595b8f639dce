"""Generic training for learned codecs: model-family registry, image-folder data, Trainer, export.

Every learned family (factorized, hyperprior, later RNN / transformer / DPCM codecs) trains through
:class:`nicbeam.training.trainer.Trainer` and the ``nicbeam train`` command.
"""
