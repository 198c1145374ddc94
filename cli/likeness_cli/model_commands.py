"""`likeness model manifest` and `likeness model import`: pinning base weights (and any other weights a
worker loads) and turning a published single-file checkpoint into a pinned diffusers directory, offline.

likeness_ml is imported inside the handlers: the manifest needs only hashlib, the import torch and
diffusers (the CLI's `ml` extra).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from likeness_cli.errors import EXIT_OK, CliError, say

#: Families a manifest or an import may name (likeness_ml.pipeline_layout.FAMILIES, without importing it).
FAMILIES = ("sd15", "sd2", "sdxl")
_IMPORT_HELP = """\
Converts FILE.safetensors (a single-file Stable Diffusion checkpoint in the original LDM/CompVis key
layout) into a diffusers directory at --out, offline, and pins it with likeness-manifest.json.

--config-dir is a local folder in the diffusers layout holding the component configs and tokenizer
files (no weights), for example copied from the model's diffusers repository. It needs:
  every family: model_index.json, scheduler/scheduler_config.json, unet/config.json, vae/config.json,
                text_encoder/config.json, tokenizer/{vocab.json,merges.txt,tokenizer_config.json}
  sdxl also:    text_encoder_2/config.json, tokenizer_2/{vocab.json,merges.txt,tokenizer_config.json}
Nothing is downloaded; pickled .ckpt files are refused."""


_NEEDS_ML = "this command needs likeness_ml (pip install 'likeness-cli[ml]')"


def _manifest(args: argparse.Namespace) -> int:
    try:
        from likeness_ml.model_manifest import ManifestMismatch, manifest_sha256, write_manifest
    except ImportError as missing:
        raise CliError(_NEEDS_ML) from missing
    began = time.monotonic()
    try:
        path = write_manifest(args.directory, family=args.family, source=args.source, licence=args.licence)
    except ManifestMismatch as refused:
        raise CliError(str(refused)) from refused
    say(f"manifest written to {path} in {time.monotonic() - began:.1f}s")
    # The manifest's own digest goes into the deployment's settings (the chart's manifestSha256 values):
    # printed alone on stdout so a script can take it.
    print(manifest_sha256(args.directory))
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    try:  # torch and diffusers
        from likeness_ml.model_manifest import manifest_sha256
        from likeness_ml.weights_import import ImportRefused, import_single_file
    except ImportError as missing:
        raise CliError(_NEEDS_ML) from missing

    began = time.monotonic()
    try:
        manifest = import_single_file(
            args.checkpoint,
            args.family,
            args.config_dir,
            args.out,
            source=args.source,
            licence=args.licence,
        )
    except ImportRefused as refused:
        raise CliError(str(refused)) from refused
    say(
        f"imported {args.checkpoint.name} as a {manifest.family} pipeline into {args.out} "
        f"({len(manifest.files)} files pinned) in {time.monotonic() - began:.1f}s"
    )
    print(manifest_sha256(args.out))  # the digest to pin in the deployment, as `model manifest` prints it
    return EXIT_OK


def _provenance(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="", help="where the weights come from (a URL), for the record")
    parser.add_argument("--licence", default="", help="the weights' licence (an SPDX id or name)")


def register(model: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `manifest` and `import` to the `likeness model` group."""
    manifest = model.add_parser(
        "manifest",
        help="pin a weights directory: write its likeness-manifest.json (SHA-256 and size of every file)",
        description="Writes DIR/likeness-manifest.json: every file's SHA-256 and size, the family, source "
        "and licence. Workers refuse weights that differ from it.",
    )
    manifest.add_argument("directory", type=Path, metavar="DIR")
    manifest.add_argument(
        "--family", choices=FAMILIES, help="the base model's family (default: read from its configs)"
    )
    _provenance(manifest)
    manifest.set_defaults(handler=_manifest)

    imported = model.add_parser(
        "import",
        help="turn a single-file LDM checkpoint into a pinned diffusers directory, offline",
        description=_IMPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imported.add_argument("checkpoint", type=Path, metavar="FILE.safetensors")
    imported.add_argument("--family", choices=FAMILIES, required=True)
    imported.add_argument("--config-dir", type=Path, required=True, help="configs and tokenizers (see above)")
    imported.add_argument("--out", type=Path, required=True, help="new folder for the diffusers directory")
    _provenance(imported)
    imported.set_defaults(handler=_import)
