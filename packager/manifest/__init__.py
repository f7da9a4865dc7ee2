"""Deploy manifests: many models, Python steps and ensembles built into one repository; versions of a built model."""
