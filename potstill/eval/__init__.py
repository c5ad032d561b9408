"""Evaluation: MTEB tasks from task folders, speed, and reports."""
