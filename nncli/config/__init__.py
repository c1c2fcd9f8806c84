"""Config files: YAML with positions, the schema, error messages, command-line overrides, the
builder (config -> chain) and the memory estimates that refuse what cannot fit.
"""
