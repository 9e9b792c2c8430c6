"""Model architectures: the registry of names (pure), the definitions (torch), and what turns an
architecture given by the user (a name, MODULE:CALLABLE, a module) into a model holding weights."""
