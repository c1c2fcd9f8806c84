"""The engine: the module protocol (the notes' B[g, z]), the chain, the losses, the registry and
the errors every layer above raises. Imports nothing else from nncli.
"""
