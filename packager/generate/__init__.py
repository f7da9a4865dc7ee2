"""Generative models as a service: ``build --task text-generation`` and ``--backend vllm``.

- :mod:`packager.generate.engine`: KV-cached decoding with per-step batching (copied into the
  repository, runs inside Triton's Python backend; also usable in-process);
- :mod:`packager.generate.triton_model`: the decoupled Python-backend ``model.py`` around it,
  with the tensors of Triton's vLLM backend;
- :mod:`packager.generate.build`: writes the repository of either backend;
- :mod:`packager.generate.vllm`: ``model.json`` engine arguments for Triton's vLLM backend.
"""
