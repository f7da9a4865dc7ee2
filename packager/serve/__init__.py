"""The embedded Triton server: its binary, the stubs' Python environment, the shadow of native-backend repositories, the generated Python runtime, and LocalServer."""
