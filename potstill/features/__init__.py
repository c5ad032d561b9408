"""The featurize stage: corpus readers (corpus), the shard store (store), featurize and
merging parts (featurize), tokenlearn interop (interop); config.py, stage.py."""
