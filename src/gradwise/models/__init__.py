"""Models: built-in architectures, user factories, and transfer-learning helpers.

The training loop uses ``build_model`` to get an ``nn.Module`` mapping (N, *input_shape) to (N, n_outputs) logits,
then ``load_pretrained`` / ``freeze`` / ``param_groups_by_depth`` when the config asks for transfer learning.
"""

from gradwise.models.build import MODELS, available_models, build_model, count_parameters
from gradwise.models.layers import ACTIVATIONS, INITS, apply_init
from gradwise.models.transfer import freeze, keep_frozen_norms_in_eval, load_pretrained, param_groups_by_depth, unfreeze

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "MODELS",
    "apply_init",
    "available_models",
    "build_model",
    "count_parameters",
    "freeze",
    "keep_frozen_norms_in_eval",
    "load_pretrained",
    "param_groups_by_depth",
    "unfreeze",
]
