// The card itself, free of HubSpot's worker globals so that tests can render it with a fake fetcher.
import React, { useCallback, useEffect, useState } from "react";
import {
  Button,
  DescriptionList,
  DescriptionListItem,
  Divider,
  EmptyState,
  ErrorState,
  Flex,
  Heading,
  Link,
  LoadingSpinner,
  ProgressBar,
  Statistics,
  StatisticsItem,
  Tag,
  Text,
} from "@hubspot/ui-extensions";
import { useCrmProperties } from "@hubspot/ui-extensions/crm";

// Backend STATUS states -> Tag variants (docs/HUBSPOT_CARD.md lists the segment -> state mapping).
const TAG_VARIANT = {
  SUCCESS: "success",
  WARNING: "warning",
  DANGER: "error",
  INFO: "info",
  DEFAULT: "default",
};
const OBJECT_TYPES = { "0-1": "CONTACT", "0-2": "COMPANY" };
const TIMEOUT_MS = 10000; // under hubspot.fetch's 15 s ceiling, so our error shows instead of HubSpot's
// The record properties the backend finds an object by when no HubSpot sync stored the record's id (a
// card-only setup): our own id first, then email (contacts) or domain (companies). Sent in the signed
// body, so the backend can trust them. The id names are the backend's defaults
// (destinations.hubspot.contact_id_property / company_id_property).
export const LOOKUP_PROPERTIES = {
  "0-1": ["accoil_user_id", "email"],
  "0-2": ["accoil_account_id", "domain"],
};

export function formatDate(iso) {
  if (!iso) return "—";
  return iso.slice(0, 10);
}

export function lookupValues(objectTypeId, properties) {
  const out = {};
  for (const name of LOOKUP_PROPERTIES[objectTypeId] || []) {
    const value = properties?.[name];
    if (value !== null && value !== undefined && String(value).trim() !== "") out[name] = String(value).trim();
  }
  return out;
}

export async function loadCard(fetcher, backendUrl, context, properties = {}) {
  const objectType = OBJECT_TYPES[context.crm.objectTypeId];
  if (!objectType) {
    throw new Error(`This card supports contacts and companies, not object type ${context.crm.objectTypeId}.`);
  }
  const response = await fetcher(`${backendUrl}/card/app`, {
    method: "POST",
    timeout: TIMEOUT_MS,
    body: {
      associatedObjectType: objectType,
      associatedObjectId: String(context.crm.objectId),
      ...lookupValues(context.crm.objectTypeId, properties),
    },
  });
  if (!response.ok) {
    const reasons = {
      401: "The backend refused HubSpot's signature: check serve.hubspot_client_secret.",
      503: "The backend is not configured yet (serve.hubspot_client_secret).",
    };
    throw new Error(reasons[response.status] || `The backend answered ${response.status}.`);
  }
  return response.json();
}

function Rate({ label, value }) {
  if (value === null || value === undefined) return null;
  return <ProgressBar title={label} value={Number(value)} maxValue={100} showPercentage={true} />;
}

function Profile({ profile, isCompany, showName }) {
  return (
    <Flex direction="column" gap="sm">
      {showName ? <Heading>{profile.name}</Heading> : null}
      <Statistics>
        <StatisticsItem label="Engagement score" number={profile.score ?? "—"} />
        {isCompany && profile.active_users !== undefined ? (
          <StatisticsItem
            label="Active users"
            number={`${profile.active_users ?? "—"} of ${profile.total_users ?? "—"}`}
          />
        ) : null}
      </Statistics>
      <Flex direction="row" gap="xs" wrap="wrap">
        {profile.segments.map((segment) => (
          <Tag key={segment.name} variant={TAG_VARIANT[segment.state] || "default"}>
            {segment.name}
          </Tag>
        ))}
      </Flex>
      <Rate label="Activation" value={profile.activation} />
      <Rate label="Adoption (recent)" value={profile.adoption_recent} />
      <Rate label="Adoption (ever)" value={profile.adoption_ever} />
      <DescriptionList direction="row">
        <DescriptionListItem label="Last active">
          <Text>{formatDate(profile.last_active)}</Text>
        </DescriptionListItem>
        <DescriptionListItem label="Frequency">
          <Text>{profile.frequency ? profile.frequency.label : "—"}</Text>
        </DescriptionListItem>
      </DescriptionList>
    </Flex>
  );
}

export function AccoilCardView({ context, fetcher, backendUrl, properties }) {
  const [state, setState] = useState({ status: "loading" });
  const load = useCallback(() => {
    setState({ status: "loading" });
    loadCard(fetcher, backendUrl, context, properties).then(
      (card) => setState({ status: card.found ? "loaded" : "empty", card }),
      (error) => setState({ status: "error", message: error.message || String(error) }),
    );
  }, [fetcher, backendUrl, context, properties]);
  useEffect(load, [load]);

  if (state.status === "loading") {
    return <LoadingSpinner label="Loading engagement metrics" showLabel={true} />;
  }
  if (state.status === "error") {
    return (
      <ErrorState title="Engagement metrics could not be loaded">
        <Text>{state.message}</Text>
        <Button onClick={load}>Try again</Button>
      </ErrorState>
    );
  }
  if (state.status === "empty") {
    return (
      <EmptyState title="No engagement metrics yet" layout="vertical">
        <Text>accoil-sync has no metrics for this record. They appear after the next sync that includes it.</Text>
      </EmptyState>
    );
  }
  const { card } = state;
  const isCompany = card.object.kind === "account";
  return (
    <Flex direction="column" gap="md">
      {card.profiles.map((profile, index) => (
        <React.Fragment key={profile.name}>
          {index > 0 ? <Divider /> : null}
          <Profile profile={profile} isCompany={isCompany} showName={card.profiles.length > 1} />
        </React.Fragment>
      ))}
      <Link href={{ url: card.details_url, external: true }}>Score history and details</Link>
    </Flex>
  );
}

// The card as HubSpot mounts it: read the record's lookup properties, then load. Without them (a read
// error) the backend can still find what a HubSpot sync stored by the record id.
export function AccoilCard({ context, fetcher, backendUrl }) {
  const names = LOOKUP_PROPERTIES[context.crm.objectTypeId] || [];
  const { properties, isLoading } = useCrmProperties(names);
  if (isLoading) return <LoadingSpinner label="Loading engagement metrics" />;
  return <AccoilCardView context={context} fetcher={fetcher} backendUrl={backendUrl} properties={properties} />;
}
