"""WSGI entry point: `gunicorn wsgi:app` (the run command starts it with threads)."""
from app import create_app

app = create_app()
