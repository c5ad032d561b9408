"""The eval stage: task folders (tasks) as mteb tasks (mteb_tasks), the models behind mteb's
encoder protocol (models), one run (run), scores (scores), speed (speed), report and plots
(report, plots), the model card's score table (card); config.py, stage.py."""
