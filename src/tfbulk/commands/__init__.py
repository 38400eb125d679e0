"""The use cases behind the commands, built from the pipeline, the state store and the
signers; free of the CLI library, so the demo, the tests and the benchmark call them too."""
