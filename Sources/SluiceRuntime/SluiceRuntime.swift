// SluiceRuntime: pipeline files (YAML) of sources, transforms and sinks, their expression
// language, and the executor that runs them on consumer groups with ordered lanes.
