"""Procedural camera video of a person exercising, through the video path as served (issue 29).

The package, in the order a frame is made:

    poses.py     the splits (kinds, backgrounds, builds, patterns of train and held out); joint
                 angles and poses, the exercise and action kinds, random periodic kinds, the
                 shape of one rep, the yaw a kind is seen from
    schedule.py  what the person does when: idling, moving, bouts of reps over a tempo-warped
                 phase, and the exact times reps complete
    draw.py      paints and colours; anti-aliased capsules drawn into frames, with motion blur
    body.py      builds, the skeleton and its projection at a yaw, clothing styles, a person
    scene.py     backgrounds, a moving object, light, the camera, a random scene of a split
    video.py     the served path: render size, I420, media/video_in.py's crop and resize
                 (`ModelFramer`), frame times, `render_video` (one model frame per micro-turn)
    live.py      the live check: a held-out scene as a Y4M for Chromium's fake camera

Used by lab/tasks/families/exercise.py (repcount_figure, startstop and their held-out versions);
lab/eval/metrics/vision.py scores the families and their baselines.
"""
