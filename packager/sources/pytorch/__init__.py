"""PyTorch modules as a source: find the module and load its weights safely, bind example inputs, export to ONNX or TorchScript, verify."""
