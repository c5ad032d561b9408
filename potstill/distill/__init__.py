"""Teacher-side stages: MLX encoder, teacher, quantization, corpus, featurize, vocabulary, PCA."""
