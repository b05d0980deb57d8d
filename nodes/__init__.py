"""ComfyUI adapters: the only package that imports ComfyUI modules.

Import ComfyUI's own modules absolutely (``folder_paths``, ``comfy.utils``) and
this pack's packages relatively: inside ComfyUI the name ``nodes`` is ComfyUI's.
"""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
