"""Discrete VAE experiment (issue #6, paper §5.2): see experiments/vae/train.py for the details.

    python experiments/vae.py --model linear --estimator rebar relax --dataset mnist5k --steps 20000 --seeds 3
    python experiments/vae.py --model two-layer --estimator rebar relax --plot --markdown results/vae.md
    python experiments/vae.py --quick --out /tmp/vae      # a smoke test that runs in seconds
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vae.train import main  # noqa: E402  (the package experiments/vae/, found before this file)

if __name__ == "__main__":
    main()
