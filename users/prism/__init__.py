"""PRISM's files: their schema and checks (``schema``), a bounded reader, the importer, the writer, the
wording of the survey and the sliders, and the ids people and conversations carry outside this site."""
