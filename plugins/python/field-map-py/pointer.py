"""Reading, writing and removing at JSON Pointers (RFC 6901), the way the
Rust `field-map` does (it reads with serde_json's `Value::pointer`)."""

import re

# Marks a pointer that leads nowhere (`None` is JSON `null`).
MISSING = object()


def check(pointer):
    """`None` when `pointer` is `""` or starts with `/`, else the reason it is refused."""
    if pointer == "" or pointer.startswith("/"):
        return None
    return f"pointer `{pointer}` must be empty or start with `/`"


def tokens(pointer):
    """The unescaped reference tokens of `pointer` (`~1` is `/`, `~0` is `~`)."""
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer.split("/")[1:]]


def read(root, pointer):
    """The value at `pointer`, or `MISSING`."""
    value = root
    for token in tokens(pointer):
        if isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list) and re.fullmatch(r"0|[1-9][0-9]*", token) and int(token) < len(value):
            value = value[int(token)]
        else:
            return MISSING
    return value


def write(root, pointer, value):
    """`root` with `value` put at `pointer`, creating objects along the way
    (`null` becomes an object, `-` appends to an array). Raises `ValueError`
    when a value on the way cannot hold the next token."""
    box = [root]
    container, key = box, 0
    for token in tokens(pointer):
        if container[key] is None:
            container[key] = {}
        container, key = container[key], _child_key(container[key], token, pointer)
    container[key] = value
    return box[0]


def _child_key(parent, token, pointer):
    """Where the child `token` of `parent` lives, created when missing."""
    if isinstance(parent, dict):
        parent.setdefault(token, None)
        return token
    if isinstance(parent, list) and token == "-":
        parent.append(None)
        return len(parent) - 1
    if isinstance(parent, list) and re.fullmatch(r"\+?[0-9]+", token) and int(token) < len(parent):
        return int(token)
    raise ValueError(f"cannot write `{pointer}`: the value holding `{token}` is not an object")


def remove(root, pointer):
    """Remove the object member at `pointer`, if there is one."""
    parent, slash, last = pointer.rpartition("/")
    if not slash:
        return
    holder = read(root, parent)
    if isinstance(holder, dict):
        holder.pop(last.replace("~1", "/").replace("~0", "~"), None)
