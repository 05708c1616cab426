"""The optimizer comparison behind ``python -m gradtx compare``.

Modules: :mod:`~gradtx.compare.deps` (the optional packages, imported lazily),
:mod:`~gradtx.compare.tasks`, :mod:`~gradtx.compare.digits` and :mod:`~gradtx.compare.chars`
(the problems), :mod:`~gradtx.compare.presets` (optimizer settings per problem and the
``frontier`` group), :mod:`~gradtx.compare.train`
(the jitted, timed training loop), :mod:`~gradtx.compare.report` (table, CSV and JSON) and
:mod:`~gradtx.compare.plot` (the PNG). The command line itself is :mod:`gradtx.cli`.

scikit-learn, matplotlib and tqdm are not dependencies of gradtx (they come with the
``gradtx[compare]`` extra), so nothing here imports them at module level.
"""
