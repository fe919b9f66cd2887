"""The Rundeck front end: the script plugin that runs ecsexec in Rundeck (docs/rundeck-plugin.md).

:mod:`ecsexec.rundeck.plugin` builds the archive; its scripts (``contents/``) call an
installed ``ecsexec``, so the plugin holds no logic of its own.
"""
