"""The export stage: the tables (tables), the reload check (check), the folder writer (writer),
the model card (card) and where teacher and corpus came from (lineage); config.py, stage.py."""
