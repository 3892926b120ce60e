"""Fetch the ImageNet weights the lessons can use, into torch's cache.

    python -m course_utils.download            # resnet18, resnet50 and vgg16
    python -m course_utils.download resnet50   # just one

Run it once while online (Binder's postBuild does); afterwards the lessons
find the weights with no network. The course model needs no download: it is
shipped in course_utils/checkpoints/coursenet.pt.
"""

from __future__ import annotations

import argparse
import sys

from .models import MODEL_NAMES, WeightsNotAvailableError, available_models, download_weights, weights_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    imagenet = [n for n in MODEL_NAMES if n != "course"]
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"models to fetch: {', '.join(imagenet)} (default: all)")
    parser.add_argument("--list", action="store_true", help="only say which weights are here")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in imagenet]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(imagenet)}")
    if not args.list:
        try:
            download_weights(args.names or None)
        except WeightsNotAvailableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    for name, here in available_models().items():
        print(f"{name:10s} {'ready' if here else 'missing':8s} {weights_path(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
