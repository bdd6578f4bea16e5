import React from "react";
import { describe, expect, it, vi } from "vitest";
import { createRenderer } from "@hubspot/ui-extensions/testing";
import {
  Button,
  Divider,
  EmptyState,
  ErrorState,
  Heading,
  Link,
  LoadingSpinner,
  ProgressBar,
  StatisticsItem,
  Tag,
  Text,
} from "@hubspot/ui-extensions";
import { AccoilCard, AccoilCardView, loadCard } from "./AccoilCardView.jsx";
import contact from "./fixtures/contact.json";
import company from "./fixtures/company.json";
import empty from "./fixtures/empty.json";

const BACKEND = "https://accoil-sync.example.com";
const CONTACT_CONTEXT = { crm: { objectId: 101, objectTypeId: "0-1" } };
const COMPANY_CONTEXT = { crm: { objectId: 202, objectTypeId: "0-2" } };

function answering(status, body) {
  return vi.fn(async () => ({ ok: status < 300, status, json: async () => body }));
}

function renderCard(context, fetcher) {
  const renderer = createRenderer("crm.record.tab");
  renderer.render(<AccoilCardView context={context} fetcher={fetcher} backendUrl={BACKEND} />);
  return renderer;
}

describe("AccoilCardView", () => {
  it("shows a spinner while loading", () => {
    const { find } = renderCard(CONTACT_CONTEXT, vi.fn(() => new Promise(() => {})));
    expect(find(LoadingSpinner).props.label).toBe("Loading engagement metrics");
  });

  it("asks the backend for this record with a POST to /card/app", async () => {
    const fetcher = answering(200, contact);
    await loadCard(fetcher, BACKEND, CONTACT_CONTEXT);
    expect(fetcher).toHaveBeenCalledWith(`${BACKEND}/card/app`, {
      method: "POST",
      timeout: 10000,
      body: { associatedObjectType: "CONTACT", associatedObjectId: "101" },
    });
  });

  it("sends the record's own id, email or domain so a card-only setup finds the object", async () => {
    const fetcher = answering(200, contact);
    const properties = { accoil_user_id: " u_001 ", email: "ada@acme.io" };
    await loadCard(fetcher, BACKEND, CONTACT_CONTEXT, properties);
    expect(fetcher.mock.calls[0][1].body).toEqual({
      associatedObjectType: "CONTACT",
      associatedObjectId: "101",
      accoil_user_id: "u_001",
      email: "ada@acme.io",
    });
    await loadCard(fetcher, BACKEND, COMPANY_CONTEXT, { accoil_account_id: null, domain: "acme.io", email: "x@y.z" });
    expect(fetcher.mock.calls[1][1].body).toEqual({
      associatedObjectType: "COMPANY",
      associatedObjectId: "202",
      domain: "acme.io", // only the company's lookup properties, empty ones left out
    });
  });

  it("reads the lookup properties with useCrmProperties before asking the backend", async () => {
    const renderer = createRenderer("crm.record.tab");
    renderer.mocks.useCrmProperties.willCall(() => ({
      properties: { accoil_user_id: null, email: "ada@acme.io" },
      error: null,
      isLoading: false,
      isRefetching: false,
      refetch: async () => {},
    }));
    const fetcher = answering(200, contact);
    renderer.render(<AccoilCard context={CONTACT_CONTEXT} fetcher={fetcher} backendUrl={BACKEND} />);
    await renderer.waitFor(() => expect(renderer.maybeFind(LoadingSpinner)).toBeNull());
    expect(renderer.mocks.useCrmProperties.calls[0][0]).toEqual(["accoil_user_id", "email"]);
    expect(fetcher.mock.calls[0][1].body.email).toBe("ada@acme.io");
    expect(renderer.find(StatisticsItem).props.number).toBe(92);
  });

  it("renders a loaded contact: score, segments as tags, rates as bars, last active, frequency, link", async () => {
    const { find, findAll, maybeFind, waitFor } = renderCard(CONTACT_CONTEXT, answering(200, contact));
    await waitFor(() => expect(maybeFind(LoadingSpinner)).toBeNull());
    const score = find(StatisticsItem);
    expect(score.props.label).toBe("Engagement score");
    expect(score.props.number).toBe(92);
    expect(findAll(StatisticsItem)).toHaveLength(1); // no user counts on a contact
    expect(findAll(Tag).map((t) => [t.text, t.props.variant])).toEqual([
      ["Champions", "success"],
      ["Most Engaged", "success"],
    ]);
    expect(findAll(ProgressBar).map((p) => [p.props.title, p.props.value])).toEqual([
      ["Activation", 100],
      ["Adoption (recent)", 85.5],
      ["Adoption (ever)", 90],
    ]);
    const texts = findAll(Text).map((t) => t.text);
    expect(texts).toContain("2026-11-20");
    expect(texts).toContain("4 of 7 days");
    expect(find(Link).props.href).toEqual({ url: contact.details_url, external: true });
    expect(maybeFind(Heading)).toBeNull(); // one profile: no per-profile heading
  });

  it("renders a loaded company with several profiles and its active users", async () => {
    const { findAll, maybeFind, waitFor } = renderCard(COMPANY_CONTEXT, answering(200, company));
    await waitFor(() => expect(maybeFind(LoadingSpinner)).toBeNull());
    expect(findAll(Heading).map((h) => h.text)).toEqual(["Default", "Expansion"]);
    expect(findAll(Divider)).toHaveLength(1);
    const stats = findAll(StatisticsItem).map((s) => [s.props.label, s.props.number]);
    expect(stats).toEqual([
      ["Engagement score", 33],
      ["Active users", "1 of 5"],
      ["Engagement score", 61],
      ["Active users", "1 of 5"],
    ]);
    expect(findAll(Tag).map((t) => t.props.variant)).toEqual(["warning", "error"]);
    expect(findAll(ProgressBar)).toHaveLength(3); // the second profile has no rates
  });

  it("renders the empty state when the backend knows no such record", async () => {
    const { find, maybeFind, waitFor } = renderCard(CONTACT_CONTEXT, answering(200, empty));
    await waitFor(() => expect(maybeFind(LoadingSpinner)).toBeNull());
    expect(find(EmptyState).props.title).toBe("No engagement metrics yet");
    expect(maybeFind(StatisticsItem)).toBeNull();
  });

  it("renders the error state with the reason, and retries on demand", async () => {
    const fetcher = vi
      .fn()
      .mockResolvedValueOnce({ ok: false, status: 401, json: async () => ({}) })
      .mockResolvedValueOnce({ ok: true, status: 200, json: async () => contact });
    const { find, maybeFind, waitFor } = renderCard(CONTACT_CONTEXT, fetcher);
    await waitFor(() => expect(maybeFind(ErrorState)).not.toBeNull());
    expect(find(ErrorState).find(Text).text).toContain("serve.hubspot_client_secret");
    find(Button).trigger("onClick");
    await waitFor(() => expect(maybeFind(StatisticsItem)).not.toBeNull());
    expect(fetcher).toHaveBeenCalledTimes(2);
  });

  it("renders the error state when the network fails", async () => {
    const { find, maybeFind, waitFor } = renderCard(
      CONTACT_CONTEXT,
      vi.fn(async () => {
        throw new Error("fetch failed: timeout");
      }),
    );
    await waitFor(() => expect(maybeFind(ErrorState)).not.toBeNull());
    expect(find(ErrorState).find(Text).text).toBe("fetch failed: timeout");
  });

  it("refuses object types other than contacts and companies without calling the backend", async () => {
    const fetcher = answering(200, contact);
    await expect(loadCard(fetcher, BACKEND, { crm: { objectId: 1, objectTypeId: "0-3" } })).rejects.toThrow(
      "contacts and companies",
    );
    expect(fetcher).not.toHaveBeenCalled();
  });
});
