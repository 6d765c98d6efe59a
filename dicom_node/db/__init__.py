"""The results database: models, engine set-up and migrations."""
