"""What runs inside a training process: the trial context, the Lightning callback, entry
points and checkpoint stores. Never imports the execution side.
"""
