"""
How long an entity's text may be where PostgreSQL indexes it.

A btree (unique names, usernames, keys, acl groups) or GIN (tags) index
entry holds at most about 2,700 bytes (a third of a page); a longer value
makes the write fail inside the database. Every indexed text field is
therefore bounded to L{INDEXED_MAX} characters, which is at most 2,048
bytes of UTF-8 (4 bytes a character at most), so that a value too long is
a schema violation naming the field (C{"length must be at most 512"})
rather than a database error.
"""

#: The most characters of an indexed text field (a name, username,
#: custom_id, credential key, acl group or tag).
INDEXED_MAX = 512
