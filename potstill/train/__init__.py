"""Training: refine a distilled static table against teacher sentence embeddings, in MLX.

data.py         the featurized store as tokenized batches (train / held-out split), streamed
targets.py      the target PCA fitted on the training split; born-again targets
model.py        token table + per-token weight + linear head; folds into a plain table
losses/         contrastive (InfoNCE), cosine, mse: one file each
loop.py         one round: compiled step, AdamW, schedule, validation, early stopping
checkpoint.py   per-epoch training state for resume
born_again.py   born-again rounds: each on the previous round's own embeddings
trainer.py      all rounds: base + features -> round1/ [round2/ ...] final/
config.py       TrainConfig: every setting, declared once
stage.py        the stage's entry in the pipeline's registry
"""
