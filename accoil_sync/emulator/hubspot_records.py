"""The HubSpot emulator's records: writes with their unique-value index (email, additional emails, unique
properties), archives, merges (the survivor keeps its values and fills empty ones from the other, whose
email becomes an additional email and whose id answers with the survivor), and a record's public shape."""

from __future__ import annotations

from typing import Any

from accoil_sync.emulator.common import iso_now


class Records:
    # Provided by the HubSpot emulator (its persistent state).
    objects: dict[str, dict[str, dict[str, Any]]]
    index: dict[str, dict[str, dict[str, str]]]
    merged: dict[str, dict[str, str]]
    additional: dict[str, str]
    properties: dict[str, dict[str, dict[str, Any]]]
    next_id: int

    @staticmethod
    def _norm(prop: str, value: Any) -> str:
        return str(value).lower() if prop == "email" else str(value)

    def _find(
        self, kind: str, id_property: str | None, key: str, follow_merged: bool = True
    ) -> dict[str, Any] | None:
        if not id_property or id_property == "hs_object_id":
            oid = str(key)
            # A read of a merged-away id answers with the record that survived the merge (its own id);
            # a write by that id does not follow (``follow_merged=False``): OBJECT_NOT_FOUND.
            while follow_merged and oid not in self.objects[kind] and oid in self.merged[kind]:
                oid = self.merged[kind][oid]
            return self.objects[kind].get(oid)
        prop = self.properties[kind].get(id_property)
        if prop is not None and prop.get("hasUniqueValue"):
            found = self.index[kind].get(id_property, {}).get(self._norm(id_property, key))
            if found is None and kind == "contacts" and id_property == "email":
                found = self.additional.get(str(key).lower())  # an additional email finds its primary record
            return self.objects[kind].get(found) if found else None
        wanted = self._norm(id_property, key)
        for obj in self.objects[kind].values():
            value = obj["properties"].get(id_property)
            if value is not None and self._norm(id_property, value) == wanted:
                return obj
        return None

    def _unique_conflict(self, kind: str, properties: dict[str, Any], own_id: str | None) -> str | None:
        for name, value in properties.items():
            prop = self.properties[kind].get(name)
            if prop and prop.get("hasUniqueValue") and value not in (None, ""):
                other = self._find(kind, name, value)
                if other is not None and other["id"] != own_id:
                    return str(other["id"])
        return None

    def _write(
        self, kind: str, obj: dict[str, Any] | None, properties: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        stamp = iso_now()
        created = obj is None
        if obj is None:
            oid = str(self.next_id)
            self.next_id += 1
            obj = {
                "id": oid,
                "properties": {"hs_object_id": oid, "createdate": stamp},
                "createdAt": stamp,
                "updatedAt": stamp,
                "archived": False,
            }
            self.objects[kind][oid] = obj
        for name, value in properties.items():
            if name == "hs_additional_emails" and kind == "contacts":
                self._index_additional(obj, str(value or ""))
            prop = self.properties[kind].get(name)
            index = self.index[kind].setdefault(name, {}) if prop and prop.get("hasUniqueValue") else None
            old = obj["properties"].get(name)
            if index is not None and old is not None:
                index.pop(self._norm(name, old), None)
            if value is None or value == "":
                obj["properties"].pop(name, None)
            else:
                obj["properties"][name] = value.lower() if name == "email" else str(value)
                if index is not None:
                    index[self._norm(name, value)] = obj["id"]
        obj["properties"]["hs_lastmodifieddate"] = stamp
        obj["updatedAt"] = stamp
        return obj, created

    def _index_additional(self, obj: dict[str, Any], value: str) -> None:
        for old in str(obj["properties"].get("hs_additional_emails") or "").split(";"):
            if old and self.additional.get(old) == obj["id"]:
                del self.additional[old]
        for email in value.lower().split(";"):
            if email:
                self.additional[email] = obj["id"]

    def _unindex(self, kind: str, obj: dict[str, Any]) -> None:
        """Forget a record that leaves the portal (archived, or merged into another)."""
        for name, value in obj["properties"].items():
            index = self.index[kind].get(name)
            if index is not None and index.get(self._norm(name, value)) == obj["id"]:
                del index[self._norm(name, value)]
        if kind == "contacts":
            self._index_additional(obj, "")

    def archive(self, kind: str, oid: str) -> bool:
        """Delete (archive) a record: it is no longer found by id, email, unique property or search."""
        obj = self.objects[kind].pop(str(oid), None)
        if obj is None:
            return False
        self._unindex(kind, obj)
        return True

    def merge(self, kind: str, primary_id: str, other_id: str) -> dict[str, Any]:
        """Merge ``other_id`` into ``primary_id`` as HubSpot's merge endpoint does: the primary record
        survives, keeps its values and fills its empty ones from the other; the other's email becomes an
        additional email; ``hs_merged_object_ids`` lists the merged-away ids, and reading one of them
        answers with the survivor."""
        primary = self.objects[kind][str(primary_id)]
        other = self.objects[kind].pop(str(other_id))
        self._unindex(kind, other)
        props = primary["properties"]
        fill = {
            name: value
            for name, value in other["properties"].items()
            if name not in props
            and not name.startswith("hs_")
            and not (self.properties[kind].get(name) or {}).get("hasUniqueValue")
        }
        merged_ids = [i for i in str(props.get("hs_merged_object_ids") or "").split(";") if i]
        merged_ids += [
            other["id"],
            *[i for i in str(other["properties"].get("hs_merged_object_ids") or "").split(";") if i],
        ]
        fill["hs_merged_object_ids"] = ";".join(merged_ids)
        if kind == "contacts":
            extra = [e for e in str(props.get("hs_additional_emails") or "").split(";") if e]
            extra += [
                e
                for e in (other["properties"].get("email"), other["properties"].get("hs_additional_emails"))
                if e
            ]
            fill["hs_additional_emails"] = ";".join(dict.fromkeys(";".join(extra).split(";")))
        for mid in merged_ids:
            self.merged[kind][mid] = primary["id"]
        obj, _ = self._write(kind, primary, fill)
        return obj

    def _public(
        self,
        obj: dict[str, Any],
        new: bool | None = None,
        trace: str | None = None,
        wanted: list[str] | None = None,
    ) -> dict[str, Any]:
        props = obj["properties"] if wanted is None else {k: obj["properties"].get(k) for k in wanted}
        out = {
            "id": obj["id"],
            "properties": props,
            "createdAt": obj["createdAt"],
            "updatedAt": obj["updatedAt"],
            "archived": False,
        }
        if new is not None:
            out["new"] = new
        if trace is not None:
            out["objectWriteTraceId"] = trace
        return out
