"""Deployment files of pru_app and the runner that starts the same stack without Docker."""
