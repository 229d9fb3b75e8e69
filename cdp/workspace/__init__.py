"""The workspace: a folder of YAML files, loaded into typed models and checked as a whole.

- ``models``: the pydantic models of every file (destinations: a union discriminated on ``type``);
- ``yaml_safe``: strict, bounded YAML reading (UTF-8, no duplicate keys, bounded depth and expansion);
- ``workspace``: the loaded :class:`~cdp.workspace.workspace.Workspace` the jobs read;
- ``loader``: :func:`~cdp.workspace.loader.load_workspace`, files to models, then every check;
- ``checks``: the cross-file checks, one module per area;
- ``file_names``: export file name templates (rendering, safety, worst-case length);
- ``java_patterns``: regexes and date-time formats compiled by the Java classes Spark uses.
"""
