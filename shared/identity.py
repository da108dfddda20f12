"""Who called, as Kaizala says: the one type every module passes around (kept apart from the HTTP client, so a
function loads without importing requests)."""

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Identity:
    """Who called, as Kaizala says. The phone number is kept out of repr so it cannot reach a log by accident."""

    id: str
    name: str | None
    phone_number: str | None = field(repr=False)
    picture_url: str | None
    action_package_id: str | None

    def to_json(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "name": self.name,
            "phoneNumber": self.phone_number,
            "pictureUrl": self.picture_url,
            "actionPackageId": self.action_package_id,
        }
