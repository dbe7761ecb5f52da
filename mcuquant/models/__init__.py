"""Models: the zoo (zoo.py) and the user's own Keras models (loading.py)."""

from mcuquant.models.loading import check_model_fits_data, check_model_source, ends_in_softmax, load_user_model
from mcuquant.models.zoo import ZOO, build_zoo_model

__all__ = ["ZOO", "build_zoo_model", "check_model_fits_data", "check_model_source", "ends_in_softmax",
           "load_user_model"]
