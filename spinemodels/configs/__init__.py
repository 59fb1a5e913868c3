"""The shipped training configs (data, not code): the reference settings ``*.yaml`` and small CPU versions
``cpu/*.yaml``. Name one as ``pkg:NAME`` (``pkg:keypoints``, ``pkg:cpu/keypoints``) wherever a config file is
taken (``spine train``, ``spinemodels.catalog.load_config``); ``spinemodels.config.packaged_config_names``
lists them."""
