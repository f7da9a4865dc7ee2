"""The README's main job: serve model_repository/ on the embedded Triton server and infer once.

Run by scripts/demo.sh after `triton-packager build -f examples/deploy.yaml -o model_repository`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from packager import LocalServer
from packager.client import Client

REPO = Path(__file__).resolve().parent.parent / "model_repository"


def main(text: str) -> None:
    # Free ports on loopback, so the demo never clashes with a server already on 8000-8002.
    with LocalServer(REPO) as server:
        print(f"tritonserver ready: http://{server.http_url}  grpc://{server.grpc_url}")
        for m in server.models():
            print(f"  {m.name:<16} version {m.version or '-':<3} {m.state}")
        with Client(server.http_url) as client:
            client.wait_until_ready("text_classifier", timeout_s=30)
            out = client.infer_sample("text_classifier", np.array([text], dtype=object))
        labels = [b.decode() if isinstance(b, bytes) else str(b) for b in out["LABELS"]]
        print(f"\ninput:  {text!r}")
        print(f"labels: {labels}  (top {len(labels)})")
        print(f"probs:  {[round(float(p), 3) for p in out['PROBS']]}")
    print("server stopped")


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "the home team won the cup final")
