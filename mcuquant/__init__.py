"""mcuquant: train, quantize, deploy and measure int8 models on microcontrollers.

Importing this package is cheap: TensorFlow is imported only by the stages that need it.
"""

__version__ = "0.1.0"
