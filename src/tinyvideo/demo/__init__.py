"""`tinyvideo demo`: the whole life of a small video reasoning model on the synthetic suite, up to a report
with plots, on a CPU.

    tinyvideo demo [--scale smoke|small] [--out DIR] [--seed N ...] [--base-model NAME | --from-scratch]
    tinyvideo demo --ablation connectors [--scale smoke|small] [--out DIR] [--seed N] [--base-model NAME | --from-scratch]

The first form generates the suite, writes the shipped base model (`tinyvideo.train.base_model`) as a model
folder and runs the recipes of `tinyvideo/recipes/base/` (finetune, coldstart, grpo) one after the other
with their paths pointed into DIR; `--from-scratch` runs the five of `tinyvideo/recipes/synth/` (vision,
pretrain, then the same three) from random weights instead. After each stage that makes a language model
the evaluation harness answers the suite's test questions in Option, Reason and Cloze modes (the fine-tuned
model also under each control in Option mode, the GRPO model in Reason mode), and `DIR/report.md` is written with
its plots. With several seeds each is a demo of its own in `DIR/seed-N/`, and `DIR/seeds.md` gives every overall
number per seed and its mean and spread over them.
With one seed the demo is DIR itself.
`smoke` cuts every stage to a few steps (it checks the plumbing; the model learns little); `small` runs the
recipes as written. The second form compares the group, image-level and naive video-level resamplers at the same
number of visual tokens, each new on the base model (its connector pretrained alone on captions, then the demo's
fine-tuning), or with `--from-scratch` around one shared vision tower (pretraining and fine-tuning), and writes
`DIR/ablation.md`: Option and Cloze accuracy, the temporal tasks broken out.

Nothing is done twice: a rerun reuses the suite, every finished stage (a stage cut short resumes from
its last checkpoint) and every answered question. A stage that trains anew first removes the runs and answers
made from its earlier model; a stage made from another model than the one at its start path now (a new base model)
is refused, never reused. DIR holds:

    synth/                    the suite
    runs/<run>/               Trainer output: checkpoints, model/, log_history.json
    eval/<run>-<mode>/        harness output: predictions.jsonl, report.json, report.md
    report.md, demo.json, *.png, examples/        (ablation.md, ablation.json, ablation.png)
    seed-N/, seeds.md, seeds.json                 (with several seeds: the above per seed, then the summary)

On a CPU shared with other work, run it as `OMP_NUM_THREADS=1 tinyvideo demo ...`: a model this small
gains little from more threads, and on a busy machine OpenMP threads spend their time waiting on each other.

A run is a stage trained with one connector: `finetune`, or `finetune-naive` in the ablation. From scratch the
recipe's own connector keeps the plain name, so the ablation reuses the demo's runs and vice versa; from a base model
every connector of the ablation is new and its runs carry its name (`connector-group`, `finetune-group`).

The package, top-down: `plan` (stages, scales, the workspace), `run` (training and evaluating the
stages), `report` (the markdown reports and their plots).
"""
