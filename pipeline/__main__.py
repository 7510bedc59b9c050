from edgepipe.pipeline.cli import entry

entry()
