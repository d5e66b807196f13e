"""SpineNav desktop app (`spinenav-gui`): displays what `inference` computes; computes nothing itself.

Layout (napari/Slicer style):
- `display/`  Qt-free display helpers: voxel axes → screen orientation, window/level, label colours;
- `state/`    the session model (CT, labels, analysis, the user's corrections, selection, crosshair)
              emitting Qt signals, and the Qt-free correction rules;
- `views/`    widgets: main window, slice views, 3D view, vertebra table;
- `workers/`  background jobs (loading, analysis through `inference.pipeline`, bundle export) that
              report progress and honour a cancel token.
"""
