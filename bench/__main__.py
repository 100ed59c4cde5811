from bench.cli import app

app()
