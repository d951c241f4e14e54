from imgrec.cli import app

app(prog_name="imgrec")
