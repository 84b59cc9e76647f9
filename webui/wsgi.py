"""The WSGI application of a configured instance (environment: SALESFLOW_*), for gunicorn's workers:
`salesflow serve` prepares the instance first (migrations, deployment), so this only opens it."""
from webui import create_app

app = create_app(setup=False)
