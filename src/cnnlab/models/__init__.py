"""Models: a registry of architectures; importing this package registers the built-in ones."""

from cnnlab.models import (  # noqa: F401
    basic,  # noqa: F401
    efficientnet,
    resnet,
    seeds,
)
from cnnlab.models.classifier import Classifier
from cnnlab.models.registry import ModelSpec, build_model, get_spec, list_models, register

__all__ = ["Classifier", "ModelSpec", "build_model", "get_spec", "list_models", "register"]
