"""The distill stage: vocabulary (vocab), token vectors (tokens, contexts), PCA (pca), SIF
weights (weighting), the first static model (build); config.py, stage.py."""
