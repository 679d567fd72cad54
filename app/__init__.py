"""Seedance web app (Gradio): `seedance app` / `make app`.

app.service (models loaded once, validation, outputs), app.ui (tabs and named API endpoints),
app.validate (input limits), app.scoring / app.plots / app.text_inspect (what the tabs show),
app.cli (the command), app.random_model (a toy pipeline of the real classes for tests and benches).
"""
