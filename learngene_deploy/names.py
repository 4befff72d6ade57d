"""The one table of names a user can type: backends, precisions, exporters, simplifiers, learngene methods.

Every module that validates, documents or dispatches on one of these names takes it from here, so adding a
backend or an exporter is one line here plus its implementation. Pure constants: importing this costs nothing.
"""

from __future__ import annotations

from typing import Literal, get_args

BackendName = Literal["onnxruntime", "openvino", "tensorrt"]
# What a profile's runtime.backend may say: a runtime, or "auto" (host profiles only): compile with every installed
# runtime that supports the precision, verify and benchmark each, keep the fastest (learngene_deploy.backends.choice).
RuntimeChoice = Literal["onnxruntime", "openvino", "tensorrt", "auto"]
AUTO_BACKEND = "auto"
Precision = Literal["fp32", "fp16", "int8"]
Exporter = Literal["dynamo", "legacy"]
Simplifier = Literal["onnxsim", "onnxslim"]
Method = Literal["ldr", "lets"]

BACKENDS: tuple[str, ...] = get_args(BackendName)
RUNTIME_CHOICES: tuple[str, ...] = get_args(RuntimeChoice)
INT8_FALLBACKS: tuple[str, ...] = ("fp32",)  # what --int8-fallback may ship when INT8 is not faster than fp32
PRECISIONS: tuple[str, ...] = get_args(Precision)
EXPORTERS: tuple[str, ...] = get_args(Exporter)
SIMPLIFIERS: tuple[str, ...] = get_args(Simplifier)
METHODS: tuple[str, ...] = get_args(Method)

# backend name -> "module:Class" of its implementation, imported the first time the name is asked for
BACKEND_CLASSES: dict[str, str] = {
    "onnxruntime": "learngene_deploy.backends.ort:OrtBackend",
    "openvino": "learngene_deploy.backends.openvino:OpenVINOBackend",
    "tensorrt": "learngene_deploy.backends.tensorrt:TensorRTBackend",
}
# learngene method -> module that defines its WeightGenerator subclass, imported on first use
METHOD_MODULES: dict[str, str] = {
    "ldr": "learngene_deploy.learngene.ldr",
    "lets": "learngene_deploy.learngene.lets",
}
