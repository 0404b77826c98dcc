// SluiceRuntime: pipeline files (YAML) of sources, transforms and sinks, their expression
// language, and the executor that runs them on consumer groups with ordered lanes. The
// component API (records, batches, the protocols, field specs, the expression language) is
// SluiceComponents, re-exported here so embedders import one module.
@_exported import SluiceComponents
